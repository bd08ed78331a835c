//! [`Verifier`]: discovery, and the path every presented credential takes.
//!
//! Policy: a JWT is looked up in the verified-token cache first, keyed by a fast hash
//! of its length and the end of its signature (`cache::TokenTail`) and compared byte
//! for byte, so only a byte-identical token can
//! hit. A hit still passes the revocation check, is never served at or after the
//! token's `exp`, and is re-verified if the issuer has since withdrawn a key. A miss
//! runs the full validation of [`crate::jwt`]. Long-lived JWTs and api keys are then
//! admitted by the deny list when there is one, and by introspection when there is not
//! (docs/API.md, "Verifiers: narrowing and allowlists"). Every credential is then narrowed to what its token
//! grants now ([`crate::narrow`]) — on hits too — and its IP allowlist judged against the
//! client address the caller gave. A JWT that cannot be narrowed here (no state in the
//! deny list, or no `rol`/`prm` in the token) is taken as issued when it is a short-lived
//! access token that carries `rol`/`prm` (its scope narrows when it expires), and is
//! otherwise introspected, so the server's answer decides. The cache's memory is bounded
//! by [`VerifierOptions::verified_cache_bytes`].

use crate::bearer::{bearer_token, presented_token};
use crate::cache::{BoundedCache, TokenTail};
use crate::dpop::{self, ProofError, ProofExpectations, ReplayCache, Seen};
use crate::error::{DiscoveryError, InvalidReason, VerifyError};
use crate::http::Http;
use crate::introspection::{Introspector, IntrospectorConfig, Outcome, Presented};
use crate::json::parse_object;
use crate::jwk::parse_jwks;
use crate::jwt::{self, Expectations};
use crate::keys::{KeySource, KeyStore};
use crate::narrow::{self, Narrowable, Narrowed};
use crate::options::{VerifierOptions, millis};
use crate::principal::Principal;
use crate::revocation::{Revocation, RevocationCheck};
use crate::transport::{self, PlainHttp, TransportPolicy};
use axum::http::HeaderMap;
use latchkey_core::bearer::Scheme;
use latchkey_core::cidr::IpNet;
use latchkey_core::clock::Clock;
use latchkey_core::jwt::{Algorithm, b64url_decode};
use latchkey_core::secret::{SecretCodec, SecretPrefix, SecretType};
use latchkey_core::usable::Refusal;
use latchkey_core::{Timestamp, TokenId};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Bytes charged per cached token on top of the token itself: the map slot, the
/// eviction-order record and the principal.
const CACHE_ENTRY_OVERHEAD: usize = 512;

/// Shards of the verified-token cache, so concurrent requests rarely share a lock.
const CACHE_SHARDS: usize = 16;

/// Verifies latchkey credentials for one issuer and audience. Cheap to clone: clones
/// share keys and caches.
///
/// Build it once at startup with [`Verifier::discover`], then protect routes with
/// [`Verifier::require`] or call [`Verifier::verify`] yourself.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct CachedJwt {
    /// The caller as the token says, and its narrowing memo.
    narrowable: Arc<Narrowable>,
    /// The key store's epoch when the signature was checked.
    epoch: u64,
    long_lived: bool,
    /// The DPoP key the token is bound to (`cnf.jkt`).
    jkt: Option<Arc<str>>,
}

/// The request a DPoP-bound token came with, as [`Verifier::verify_dpop`] checks its
/// proof (docs/MACHINES.md, "Binding tokens with DPoP").
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The request's method (`GET`).
    pub method: &'a str,
    /// The request's absolute URI as the client addressed it (`https://api.example.com/reports`);
    /// query and fragment are ignored.
    pub uri: &'a str,
    /// The `DPoP` header's value, if the request has exactly one.
    pub proof: Option<&'a str>,
}

pub(crate) struct Inner {
    issuer: String,
    audience: String,
    leeway_seconds: i64,
    algorithms: Vec<Algorithm>,
    max_token_bytes: usize,
    keys: KeyStore,
    verified: Option<BoundedCache<Arc<[u8]>, CachedJwt, TokenTail>>,
    introspector: Introspector,
    revocation: Arc<dyn RevocationCheck>,
    clock: Arc<dyn Clock>,
    codec: SecretCodec,
    pub(crate) trusted_proxies: Vec<IpNet>,
    geoip: Option<Arc<latchkey_geoip::ReloadingGeoIp>>,
    dpop_window_seconds: i64,
    dpop_replays: ReplayCache,
    pub(crate) public_origin: Option<String>,
}

/// What discovery learnt from the issuer.
struct Endpoints {
    jwks_uri: Option<String>,
    introspection: String,
}

impl Verifier {
    /// Reads the issuer's RFC 8414 metadata and key set, and starts refreshing the keys
    /// every [`VerifierOptions::jwks_refresh_interval`] (zero: never).
    ///
    /// `issuer` must be exactly the `iss` the server writes (its public URL), and the
    /// metadata must name exactly it. The server is reached there, or at
    /// [`VerifierOptions::connect`] when set; `https://` is checked against the
    /// system's roots and [`VerifierOptions::tls_ca_file`], and plain `http://` is
    /// accepted only on loopback unless [`VerifierOptions::allow_insecure_issuer`].
    pub async fn discover(issuer: &str, options: VerifierOptions) -> Result<Self, DiscoveryError> {
        let (route, policy) = Route::new(issuer, &options, true)?;
        let http = Http::new(options.http_timeout, &policy).map_err(DiscoveryError::BadOption)?;
        let metadata_url = route.reach(&metadata_url(issuer)?, "the metadata URL")?;
        let body = http
            .get(&metadata_url)
            .await
            .map_err(|e| DiscoveryError::Http {
                url: metadata_url.clone(),
                detail: e.0,
            })?;
        let document = |detail: &str| DiscoveryError::Document {
            url: metadata_url.clone(),
            detail: detail.to_owned(),
        };
        let metadata = parse_object(&body).map_err(|_| document("not a JSON object"))?;
        let found = metadata.get("issuer").and_then(Value::as_str).unwrap_or("");
        if found != issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: found.to_owned(),
            });
        }
        let jwks_uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| document("no jwks_uri"))?;
        let jwks_uri = route.reach(jwks_uri, "jwks_uri")?;
        let introspection = metadata
            .get("introspection_endpoint")
            .and_then(Value::as_str)
            .map_or_else(|| default_introspection(issuer), str::to_owned);
        let introspection = route.reach(&introspection, "introspection_endpoint")?;
        let fetched = options.clock.now().millis();
        let set = KeyStore::fetch(&http, &jwks_uri, &options.algorithms).await?;
        if set.len() == 0 {
            return Err(DiscoveryError::NoUsableKeys);
        }
        let refresh = options.jwks_refresh_interval;
        let source = KeySource {
            http: http.clone(),
            jwks_uri: jwks_uri.clone(),
        };
        let verifier = Self::build(
            issuer,
            options,
            http,
            Endpoints {
                jwks_uri: Some(jwks_uri),
                introspection,
            },
            KeyStoreSeed {
                set,
                source: Some(source),
                fetched,
            },
        )?;
        if !refresh.is_zero() {
            spawn_refresh(Arc::downgrade(&verifier.inner), refresh);
        }
        Ok(verifier)
    }

    /// A verifier with pinned keys: `jwks` is a JWK Set document, used as is and never
    /// refetched (unknown kids are refused at once). No request is made here;
    /// introspection, if configured, goes to `{issuer}/oauth/introspect`, moved onto
    /// [`VerifierOptions::connect`] when set. The plain-`http://` rule applies only
    /// when a credential is configured, since without one nothing is ever sent.
    pub fn from_jwks(
        issuer: &str,
        jwks: &[u8],
        options: VerifierOptions,
    ) -> Result<Self, DiscoveryError> {
        let (route, policy) = Route::new(issuer, &options, options.credential.is_some())?;
        let introspection = route.reach(&default_introspection(issuer), "the introspection URL")?;
        let http = Http::new(options.http_timeout, &policy).map_err(DiscoveryError::BadOption)?;
        let set =
            parse_jwks(jwks, &options.algorithms).map_err(|detail| DiscoveryError::Document {
                url: "(pinned JWKS)".to_owned(),
                detail,
            })?;
        if set.len() == 0 {
            return Err(DiscoveryError::NoUsableKeys);
        }
        let fetched = options.clock.now().millis();
        Self::build(
            issuer,
            options,
            http,
            Endpoints {
                jwks_uri: None,
                introspection,
            },
            KeyStoreSeed {
                set,
                source: None,
                fetched,
            },
        )
    }

    fn build(
        issuer: &str,
        options: VerifierOptions,
        http: Http,
        endpoints: Endpoints,
        seed: KeyStoreSeed,
    ) -> Result<Self, DiscoveryError> {
        if options.algorithms.is_empty() || options.max_token_bytes == 0 {
            return Err(DiscoveryError::BadOption(
                "algorithms and max_token_bytes must not be empty".to_owned(),
            ));
        }
        let prefix = SecretPrefix::parse(&options.secret_prefix)
            .map_err(|e| DiscoveryError::BadOption(format!("secret_prefix {e}")))?;
        let public_origin = options
            .public_origin
            .as_deref()
            .map(|origin| {
                let bare = reqwest::Url::parse(origin).is_ok_and(|url| {
                    url.path() == "/" && url.query().is_none() && url.fragment().is_none()
                });
                transport::origin(origin).filter(|_| bare).ok_or_else(|| {
                    DiscoveryError::BadOption(format!(
                        "public_origin `{origin}`: must be scheme://host[:port], without a path"
                    ))
                })
            })
            .transpose()?;
        if let Some(uri) = &endpoints.jwks_uri {
            tracing::info!(issuer, jwks_uri = %uri, keys = seed.set.len(), "verifier ready");
        }
        if let Some(connect) = &options.connect {
            tracing::info!(
                issuer,
                connect,
                "reaching the issuer at its connect address"
            );
        }
        let keys = KeyStore::new(
            seed.set,
            seed.source,
            options.algorithms.clone(),
            millis(options.jwks_min_refetch_interval),
            seed.fetched,
        );
        let verified = (options.verified_cache_bytes > 0)
            .then(|| BoundedCache::new(CACHE_SHARDS, options.verified_cache_bytes));
        let introspector = Introspector::new(
            IntrospectorConfig {
                endpoint: endpoints.introspection,
                issuer: issuer.to_owned(),
                credential: options.credential,
                entries: options.introspection_cache_entries,
                positive_ttl_ms: millis(options.introspection_positive_ttl),
                negative_ttl_ms: millis(options.introspection_negative_ttl),
            },
            http,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: issuer.to_owned(),
                audience: options.audience.unwrap_or_else(|| issuer.to_owned()),
                leeway_seconds: i64::try_from(options.leeway.as_secs()).unwrap_or(i64::MAX),
                algorithms: options.algorithms,
                max_token_bytes: options.max_token_bytes,
                keys,
                verified,
                introspector,
                revocation: options.revocation,
                clock: options.clock,
                // Only `parse` is used, which needs no pepper: the pepper is the server's.
                codec: SecretCodec::new(prefix, &[]),
                trusted_proxies: options.trusted_proxies,
                geoip: options.geoip,
                dpop_window_seconds: i64::try_from(options.dpop_proof_window.as_secs())
                    .unwrap_or(i64::MAX),
                dpop_replays: ReplayCache::new(options.dpop_replay_capacity),
                public_origin,
            }),
        })
    }

    /// Verifies a bearer credential (an access token, a long-lived JWT or an api key)
    /// from a client whose address is not known, and returns its caller with the scopes
    /// its token grants now. A credential with an IP allowlist is refused here: see
    /// [`verify_from`](Self::verify_from). Scopes are not checked here: see
    /// [`Scopes::check`].
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, VerifyError> {
        self.verify_from(token, None).await
    }

    /// Like [`verify`](Self::verify), for a client at `client`: the address the request
    /// came from as far as it can be trusted (after any trusted proxies), or `None` when
    /// it is not known, which refuses every credential that has an IP allowlist.
    pub async fn verify_from(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, VerifyError> {
        let result = self.inner.verify(token, client, None).await;
        if let Err(error) = &result {
            tracing::debug!(%error, "credential refused");
        }
        result
    }

    /// Verifies an access token presented with the `DPoP` scheme (RFC 9449 §7.1): it
    /// must be bound to a key (`cnf.jkt`), and `request` must carry a proof by that key
    /// for its method and URI, within the proof window, with `ath` the token's hash and
    /// a `jti` this verifier has not seen. Refusals are
    /// [`VerifyError::InvalidDpopToken`] and [`VerifyError::InvalidDpopProof`].
    pub async fn verify_dpop(
        &self,
        token: &str,
        request: &DpopRequest<'_>,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, VerifyError> {
        let result = match self.inner.verify(token, client, Some(request)).await {
            Err(VerifyError::InvalidToken(reason)) => Err(VerifyError::InvalidDpopToken(reason)),
            other => other,
        };
        if let Err(error) = &result {
            tracing::debug!(%error, "DPoP credential refused");
        }
        result
    }

    /// Takes the token from `headers` as [`authenticate_from`](Self::authenticate_from)
    /// does, and also accepts the `DPoP` scheme with its proof, for a request with
    /// `method` whose absolute URI `uri` gives (asked for only when the scheme is
    /// `DPoP`, so bearer requests pay nothing for it).
    pub async fn authenticate_request(
        &self,
        method: &str,
        headers: &HeaderMap,
        uri: impl FnOnce() -> String,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, VerifyError> {
        match presented_token(headers)? {
            (Scheme::Bearer, token) => self.verify_from(token, client).await,
            (Scheme::Dpop, token) => {
                let values = headers
                    .get_all("dpop")
                    .iter()
                    .map(|value| value.to_str().ok());
                let proof = dpop::proof_header(values).map_err(VerifyError::InvalidDpopProof)?;
                let uri = uri();
                let request = DpopRequest {
                    method,
                    uri: &uri,
                    proof,
                };
                self.verify_dpop(token, &request, client).await
            }
        }
    }

    /// The external origin DPoP proofs name ([`VerifierOptions::public_origin`]).
    pub fn public_origin(&self) -> Option<&str> {
        self.inner.public_origin.as_deref()
    }

    /// Takes the bearer token from `headers` (RFC 6750 §2.1) and verifies it, the
    /// client's address unknown.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, VerifyError> {
        self.verify(bearer_token(headers)?).await
    }

    /// Takes the bearer token from `headers` and verifies it for a client at `client`.
    pub async fn authenticate_from(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, VerifyError> {
        self.verify_from(bearer_token(headers)?, client).await
    }

    /// The proxies whose `X-Forwarded-For` the tower layer believes
    /// ([`VerifierOptions::trusted_proxies`]).
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.inner.trusted_proxies
    }

    /// The clock this verifier judges expiry by ([`VerifierOptions::clock`]), for
    /// callers whose own decisions must agree with it.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// The issuer tokens must come from.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience tokens must be for.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// A handle for the deny-list replica to report revocations to.
    pub fn evictor(&self) -> Evictor {
        Evictor {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Refetches the key set now, as the periodic refresh does.
    pub async fn refresh_keys(&self) -> Result<(), DiscoveryError> {
        let now = self.inner.clock.now().millis();
        self.inner.keys.refresh(now).await
    }
}

struct KeyStoreSeed {
    set: crate::jwk::KeySet,
    source: Option<KeySource>,
    fetched: i64,
}

impl Inner {
    async fn verify(
        &self,
        token: &str,
        client: Option<IpAddr>,
        dpop: Option<&DpopRequest<'_>>,
    ) -> Result<Arc<Principal>, VerifyError> {
        if token.len() > self.max_token_bytes {
            return Err(InvalidReason::TooLarge.into());
        }
        let now = self.clock.now();
        let (principal, jkt) = if token.contains('.') {
            self.verify_jwt(token, now).await?
        } else {
            (self.verify_api_key(token, now).await?, None)
        };
        // The one branch the bearer path pays for DPoP.
        match (jkt, dpop) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(VerifyError::InvalidDpopToken(InvalidReason::NotDpopBound));
            }
            (Some(_), None) => return Err(VerifyError::InvalidDpopToken(InvalidReason::DpopBound)),
            (Some(jkt), Some(request)) => self.check_proof(token, &jkt, request, now)?,
        }
        narrow::allowed(&principal, client, now).map_err(refused)?;
        if let Some(rules) = self.revocation.network(&principal.tenant) {
            narrow::admitted(&rules, client, self.geoip.as_deref()).map_err(refused)?;
        }
        Ok(principal)
    }

    /// Checks the DPoP proof of a token bound to `jkt` (README.md, "Binding tokens with
    /// DPoP"); the replay check comes last, so only an otherwise good proof is remembered.
    fn check_proof(
        &self,
        token: &str,
        jkt: &str,
        request: &DpopRequest<'_>,
        now: Timestamp,
    ) -> Result<(), VerifyError> {
        let refused = VerifyError::InvalidDpopProof;
        let proof = request.proof.ok_or(refused(ProofError::Missing))?;
        let expect = ProofExpectations {
            method: request.method,
            uri: request.uri,
            access_token: Some(token),
            now,
            window_seconds: self.dpop_window_seconds,
        };
        let checked = dpop::check_proof(proof, &expect).map_err(refused)?;
        if checked.jkt != jkt {
            return Err(refused(ProofError::KeyMismatch));
        }
        let until = checked.remember_until_ms(self.dpop_window_seconds);
        match self
            .dpop_replays
            .first_use(&checked.replay_key(), until, now.millis())
        {
            Seen::First => Ok(()),
            Seen::Again => Err(refused(ProofError::Replayed)),
            Seen::Full => Err(VerifyError::Unavailable(
                "the DPoP replay cache is full".to_owned(),
            )),
        }
    }

    async fn verify_jwt(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<(Arc<Principal>, Option<Arc<str>>), VerifyError> {
        if let Some(cache) = &self.verified
            && let Some(hit) = cache.get(token.as_bytes(), now.millis())
            && hit.epoch == self.keys.epoch()
        {
            let principal = self.admit(token, &hit, now).await?;
            return Ok((principal, hit.jkt));
        }
        // Read before the key lookup: a key withdrawn meanwhile then leaves this entry
        // with an old epoch, and it is verified afresh next time.
        let epoch = self.keys.epoch();
        let segments = jwt::split(token)?;
        let header = jwt::check_header(segments.header, &self.algorithms)?;
        let payload = b64url_decode(segments.payload).ok_or(InvalidReason::BadEncoding)?;
        let signature = b64url_decode(segments.signature).ok_or(InvalidReason::BadEncoding)?;
        let key = self
            .keys
            .key(&header.kid, now.millis())
            .await
            .ok_or(InvalidReason::UnknownKey)?;
        if key.alg() != header.alg {
            return Err(InvalidReason::AlgorithmMismatch.into());
        }
        if !key.verify(segments.signing_input.as_bytes(), &signature) {
            return Err(InvalidReason::BadSignature.into());
        }
        let expect = Expectations {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway_seconds: self.leeway_seconds,
        };
        let checked = jwt::check_claims(&payload, &expect, now)?;
        let entry = CachedJwt {
            narrowable: Arc::new(Narrowable::new(checked.principal, checked.basis)),
            epoch,
            long_lived: checked.long_lived,
            jkt: checked.jkt,
        };
        let principal = self.admit(token, &entry, now).await?;
        if let Some(cache) = &self.verified {
            // Served from the cache only until `exp` itself: past it, the full check
            // (with its leeway) decides.
            let deadline = entry
                .narrowable
                .issued
                .expires_at
                .map_or(i64::MAX, |exp| exp.saturating_mul(1000));
            let cost = token.len() + CACHE_ENTRY_OVERHEAD;
            cache.insert(
                Arc::from(token.as_bytes()),
                entry.clone(),
                deadline,
                cost,
                now.millis(),
            );
        }
        Ok((principal, entry.jkt))
    }

    /// The deny-list (or introspection) decision for a JWT whose signature and claims
    /// are good, and its caller narrowed to what the token grants now.
    async fn admit(
        &self,
        token: &str,
        entry: &CachedJwt,
        now: Timestamp,
    ) -> Result<Arc<Principal>, VerifyError> {
        let issued = &entry.narrowable.issued;
        match self
            .revocation
            .check(&issued.token_id, issued.jti.as_deref())
        {
            Revocation::NotRevoked => {
                match entry
                    .narrowable
                    .narrow(&*self.revocation)
                    .map_err(refused)?
                {
                    Narrowed::Now(principal) => return Ok(principal),
                    Narrowed::Unknown => {}
                }
            }
            Revocation::Revoked => {
                if let Some(cache) = &self.verified {
                    cache.remove(token.as_bytes());
                }
                return Err(InvalidReason::Revoked.into());
            }
            Revocation::Stale => return Err(stale()),
            Revocation::NoList => {}
        }
        // Nothing narrowed it here.
        if !entry.long_lived && entry.narrowable.basis.is_some() {
            return Ok(issued.clone());
        }
        match self
            .introspector
            .introspect(token, Presented::Jwt, now, self.revocation.state_epoch())
            .await?
        {
            Outcome::Jwt(None) | Outcome::ApiKey(_) => Ok(issued.clone()),
            Outcome::Jwt(Some(scope)) if issued.scopes.is_subset(&scope) => Ok(issued.clone()),
            Outcome::Jwt(Some(scope)) => Ok(Arc::new(Principal {
                scopes: latchkey_core::usable::narrow(&issued.scopes, &scope),
                ..Principal::clone(issued)
            })),
            Outcome::Inactive => Err(InvalidReason::Inactive.into()),
        }
    }

    async fn verify_api_key(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Arc<Principal>, VerifyError> {
        let parsed = self
            .codec
            .parse(token)
            .map_err(|_| InvalidReason::MalformedApiKey)?;
        let id = match (parsed.kind, parsed.id) {
            (SecretType::ApiKey, Some(id)) => id,
            _ => return Err(InvalidReason::MalformedApiKey.into()),
        };
        // The id inside the key lets the deny list answer before any introspection.
        let listed = match self.revocation.check(&id, None) {
            Revocation::Revoked => {
                self.introspector.forget(token);
                return Err(InvalidReason::Revoked.into());
            }
            Revocation::Stale => return Err(stale()),
            Revocation::NotRevoked => true,
            Revocation::NoList => false,
        };
        let narrowable = match self
            .introspector
            .introspect(
                token,
                Presented::ApiKey(id),
                now,
                self.revocation.state_epoch(),
            )
            .await?
        {
            Outcome::ApiKey(narrowable) => narrowable,
            Outcome::Jwt(_) | Outcome::Inactive => return Err(InvalidReason::Inactive.into()),
        };
        if listed
            && let Narrowed::Now(principal) =
                narrowable.narrow(&*self.revocation).map_err(refused)?
        {
            return Ok(principal);
        }
        Ok(narrowable.issued.clone())
    }

    /// Drops cached results whose principal matches `doomed`.
    pub(crate) fn evict(&self, doomed: impl Fn(&Principal) -> bool) {
        if let Some(cache) = &self.verified {
            cache.remove_where(|entry| doomed(&entry.narrowable.issued));
        }
        self.introspector.evict(&doomed);
    }

    /// Drops every cached introspection answer.
    pub(crate) fn forget_introspections(&self) {
        self.introspector.forget_all();
    }
}

/// A usability refusal as the client is told it: 401 `invalid_token`.
fn refused(refusal: Refusal) -> VerifyError {
    let reason = match refusal {
        Refusal::AddressNotAllowed => InvalidReason::AddressNotAllowed,
        Refusal::AddressUnknown => InvalidReason::AddressUnknown,
        Refusal::NetworkNotAllowed | Refusal::CountryNotAllowed => InvalidReason::NetworkNotAllowed,
        Refusal::UserLeft => InvalidReason::UserLeft,
        Refusal::Revoked => InvalidReason::Revoked,
        Refusal::Expired => InvalidReason::Expired,
    };
    VerifyError::InvalidToken(reason)
}

fn stale() -> VerifyError {
    // The replica logs (once) when it goes stale; one line per refused request would
    // flood the log under load.
    tracing::debug!("the deny list is stale; refusing tokens until it catches up");
    VerifyError::Unavailable("the deny list is stale".to_owned())
}

/// The RFC 8414 §3 metadata URL: the well-known path goes between the authority and any
/// path of the issuer.
fn metadata_url(issuer: &str) -> Result<String, DiscoveryError> {
    let bad = || DiscoveryError::BadIssuer(issuer.to_owned());
    let (scheme, rest) = issuer.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") {
        return Err(bad());
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || issuer.contains(['?', '#', ' ']) {
        return Err(bad());
    }
    let path = path.trim_end_matches('/');
    Ok(format!(
        "{scheme}://{authority}/.well-known/oauth-authorization-server{path}"
    ))
}

/// Where the issuer's URLs are requested: on the issuer itself, or moved onto the
/// connect address (docs/DEPLOYMENT.md, "Gateways in another network following an
/// https issuer").
struct Route {
    issuer_origin: String,
    connect_origin: Option<String>,
    allow_insecure: bool,
}

impl Route {
    /// `sends`: whether anything will be requested from the server (a pinned-keys
    /// verifier without a credential never does, and so needs no plain-HTTP check).
    fn new(
        issuer: &str,
        options: &VerifierOptions,
        sends: bool,
    ) -> Result<(Self, TransportPolicy), DiscoveryError> {
        let allow_insecure = options.allow_insecure_issuer || !sends;
        let connect = if sends {
            options.connect.as_ref()
        } else {
            None
        };
        let connect_origin = match connect {
            Some(connect) => {
                let base = transport::checked_base(connect, "connect", allow_insecure)?;
                let without_path = reqwest::Url::parse(&base).is_ok_and(|u| u.path() == "/");
                let origin = transport::origin(&base)
                    .filter(|_| without_path)
                    .ok_or_else(|| {
                        DiscoveryError::BadIssuer(format!(
                            "connect `{connect}`: must be scheme://host[:port], without a path"
                        ))
                    })?;
                Some(origin)
            }
            None => None,
        };
        // The issuer is only a name when a connect address is set (or when nothing is
        // ever sent), so the plain-HTTP rule is not its to pass.
        let issuer_base = if connect_origin.is_some() || !sends {
            transport::checked_name(issuer, "issuer")?
        } else {
            transport::checked_base(issuer, "issuer", allow_insecure)?
        };
        let issuer_origin = transport::origin(&issuer_base)
            .ok_or_else(|| DiscoveryError::BadIssuer(issuer.to_owned()))?;
        let policy = TransportPolicy {
            tls_ca_file: options.tls_ca_file.clone(),
            identity: options.tls_client_identity.clone(),
            allow_insecure,
        };
        Ok((
            Self {
                issuer_origin,
                connect_origin,
                allow_insecure,
            },
            policy,
        ))
    }

    /// The URL to request for `url` (named `what` in errors), which the issuer or its
    /// metadata gave.
    fn reach(&self, url: &str, what: &str) -> Result<String, DiscoveryError> {
        let target = match &self.connect_origin {
            Some(connect) => {
                transport::rebase(url, &self.issuer_origin, connect).ok_or_else(|| {
                    DiscoveryError::Document {
                        url: url.to_owned(),
                        detail: format!(
                            "{what} is not on the issuer's origin {}, so it cannot be reached through connect",
                            self.issuer_origin
                        ),
                    }
                })?
            }
            None => url.to_owned(),
        };
        let parsed = reqwest::Url::parse(&target).map_err(|_| DiscoveryError::Document {
            url: target.clone(),
            detail: format!("{what} is not an absolute URL"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DiscoveryError::Document {
                url: target,
                detail: format!("{what} is not an http:// or https:// URL"),
            });
        }
        // The base was checked (and warned about) in `new`; this catches metadata that
        // names a plain-HTTP host elsewhere.
        if transport::plain_http_decision(&parsed, self.allow_insecure) == PlainHttp::Refused {
            return Err(DiscoveryError::InsecureIssuer {
                setting: what.to_owned(),
                url: target,
            });
        }
        Ok(target)
    }
}

fn default_introspection(issuer: &str) -> String {
    format!("{}/oauth/introspect", issuer.trim_end_matches('/'))
}

fn spawn_refresh(inner: std::sync::Weak<Inner>, period: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate and the keys were just fetched.
        ticker.tick().await;
        loop {
            ticker.tick().await;
            // Holding the verifier only while refreshing lets it be dropped in between,
            // which ends this task.
            let Some(inner) = inner.upgrade() else {
                break;
            };
            let now = inner.clock.now().millis();
            if let Err(error) = inner.keys.refresh(now).await {
                tracing::warn!(%error, "periodic JWKS refresh failed; keeping the old keys");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_follows_rfc_8414() {
        assert_eq!(
            metadata_url("http://127.0.0.1:7700").unwrap(),
            "http://127.0.0.1:7700/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            metadata_url("http://auth.example/tenant1/").unwrap(),
            "http://auth.example/.well-known/oauth-authorization-server/tenant1"
        );
        assert_eq!(
            metadata_url("https://auth.example").unwrap(),
            "https://auth.example/.well-known/oauth-authorization-server"
        );
        assert!(metadata_url("ftp://auth.example").is_err());
        assert!(metadata_url("http://").is_err());
    }
}

/// A handle for the deny-list replica to tell a [`Verifier`](crate::Verifier) about new
/// revocations, so cached entries for them are dropped at once rather than on their
/// next use. Correctness does not depend on it (the check runs on every hit); memory
/// and introspection results without a deny list do.
///
/// It holds the verifier weakly, so a replica keeping it does not keep the verifier
/// alive. Each call scans the caches: meant for revocation events, not per request.
#[derive(Debug, Clone)]
pub struct Evictor {
    pub(crate) inner: Weak<Inner>,
}

impl Evictor {
    /// Drops every cached result for the token `token_id`.
    pub fn token_revoked(&self, token_id: &TokenId) {
        if let Some(inner) = self.inner.upgrade() {
            inner.evict(|principal| principal.token_id == *token_id);
        }
    }

    /// Drops every cached result for the JWT whose `jti` is `jti`.
    pub fn jti_revoked(&self, jti: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner.evict(|principal| principal.jti.as_deref() == Some(jti));
        }
    }

    /// Drops every cached result for any of `token_ids` or `jtis` in one pass over the
    /// caches, so a page of revocations costs one scan rather than one per entry.
    pub(crate) fn revoked(&self, token_ids: &[TokenId], jtis: &[&str]) {
        if token_ids.is_empty() && jtis.is_empty() {
            return;
        }
        if let Some(inner) = self.inner.upgrade() {
            let token_ids: HashSet<&TokenId> = token_ids.iter().collect();
            let jtis: HashSet<&str> = jtis.iter().copied().collect();
            inner.evict(|principal| {
                token_ids.contains(&principal.token_id)
                    || principal.jti.as_deref().is_some_and(|j| jtis.contains(j))
            });
        }
    }

    /// A role's permissions or a membership changed: drops every cached introspection
    /// answer, whose scope the server narrowed with the state of its time.
    pub(crate) fn state_changed(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.forget_introspections();
        }
    }

    /// Whether the verifier still exists.
    pub(crate) fn is_alive(&self) -> bool {
        self.inner.strong_count() > 0
    }
}
