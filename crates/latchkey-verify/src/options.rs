//! What a verifier is configured with, and its defaults.
//!
//! Policy: every default is safe on its own (60 s leeway, 8 KiB tokens, every algorithm
//! latchkey issues, at most one unknown-`kid` refetch per 30 s, short introspection
//! TTLs). The clock is an option too, so tests and benchmarks pin time instead of
//! sleeping.

use crate::revocation::{NoRevocationList, RevocationCheck};
use crate::transport::ClientIdentity;
use latchkey_core::clock::{Clock, SystemClock};
use latchkey_core::jwt::Algorithm;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The verifier's own credential for introspection: a `latchkey` tenant api key holding
/// `latchkey:introspect`. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Wraps the credential string.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(…)")
    }
}

/// How a [`Verifier`](crate::Verifier) checks tokens. Start from `Default` and change
/// what you need:
///
/// ```
/// use latchkey_verify::{Credential, VerifierOptions};
/// let options = VerifierOptions {
///     audience: Some("https://api.example.com".to_owned()),
///     credential: Some(Credential::new("lk_ak_…")),
///     ..VerifierOptions::default()
/// };
/// assert_eq!(options.leeway.as_secs(), 60);
/// ```
#[derive(Clone)]
pub struct VerifierOptions {
    /// The `aud` a token must carry. `None`: the issuer URL, which is the server's
    /// default audience.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The algorithms accepted; keys of other algorithms are ignored.
    pub algorithms: Vec<Algorithm>,
    /// Tokens longer than this many bytes are refused before any decoding.
    pub max_token_bytes: usize,
    /// Used to introspect api keys and long-lived JWTs. Without it those are refused.
    pub credential: Option<Credential>,
    /// The prefix of the deployment's secrets (`lk` by default), to recognise api keys.
    pub secret_prefix: String,
    /// How often the key set is refetched in the background.
    pub jwks_refresh_interval: Duration,
    /// The least time between two refetches caused by an unknown `kid`.
    pub jwks_min_refetch_interval: Duration,
    /// Memory for the verified-token cache, in bytes (token bytes plus a fixed
    /// per-entry overhead). `0` turns the cache off.
    pub verified_cache_bytes: usize,
    /// How many introspection results are kept.
    pub introspection_cache_entries: usize,
    /// How long an "active" introspection result is trusted (never past the token's
    /// own `exp`). Without a deny-list replica this bounds how long a revoked api key
    /// keeps working.
    pub introspection_positive_ttl: Duration,
    /// How long an "inactive" result is remembered, so a flood of bad keys does not
    /// become a flood of introspections. Shorter than the positive TTL so a key that
    /// was just created starts working soon.
    pub introspection_negative_ttl: Duration,
    /// Timeout of every request to the issuer.
    pub http_timeout: Duration,
    /// The deny-list seam; [`NoRevocationList`] by default.
    pub revocation: Arc<dyn RevocationCheck>,
    /// The clock; [`SystemClock`] by default.
    pub clock: Arc<dyn Clock>,
    /// Proxies (addresses or networks) whose `X-Forwarded-For` the tower layer believes
    /// when it takes the client's address from axum's `ConnectInfo`; from any other
    /// peer the header is ignored. Empty by default: the TCP peer is the client.
    pub trusted_proxies: Vec<latchkey_core::cidr::IpNet>,
    /// The GeoIP database the country rules of tenant policies are judged with
    /// (docs/API.md, "Where tokens may be used from"). Without one, every token of a
    /// tenant whose rules name countries is refused (fail closed).
    pub geoip: Option<Arc<latchkey_geoip::ReloadingGeoIp>>,
    /// The base URL to reach the server at (`scheme://host[:port]`), when it differs
    /// from the issuer — say the issuer is the public `https://auth.example.com` and
    /// the verifier talks to `http://10.0.0.5:7700` inside the network. Metadata, keys,
    /// introspection all go there; the URLs the metadata names on the issuer's origin
    /// are moved onto it, path kept. `None`: the issuer itself.
    pub connect: Option<String>,
    /// A PEM file of CA certificates trusted for `https://` beside the system's roots,
    /// for a server whose certificate comes from a private CA.
    pub tls_ca_file: Option<PathBuf>,
    /// The certificate and key to present to an `https://` server that asks for mutual
    /// TLS.
    pub tls_client_identity: Option<ClientIdentity>,
    /// Accept plain `http://` to a server beyond loopback. Tokens, keys and
    /// introspection answers then cross the network unprotected; a warning is logged
    /// at start. Loopback addresses never need it.
    pub allow_insecure_issuer: bool,
    /// The origin (`https://api.example.com`) clients address this resource server at,
    /// when it differs from what the requests show — behind a TLS-terminating load
    /// balancer, say. DPoP proofs name it in `htu`; the tower layer joins it with the
    /// request's path. `None`: the request's own absolute URI, else `http://` and its
    /// `Host` header (docs/MACHINES.md, "Binding tokens with DPoP").
    pub public_origin: Option<String>,
    /// How far a DPoP proof's `iat` may be from now, either way (60 s).
    pub dpop_proof_window: Duration,
    /// How many DPoP proofs the replay cache remembers at most (1,000,000, about
    /// 64 MiB when full). When it is full of proofs still inside their window, new
    /// proofs are refused with a 503 rather than old ones forgotten.
    pub dpop_replay_capacity: usize,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            audience: None,
            leeway: Duration::from_secs(60),
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256],
            max_token_bytes: 8 * 1024,
            credential: None,
            secret_prefix: "lk".to_owned(),
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_refetch_interval: Duration::from_secs(30),
            verified_cache_bytes: 32 * 1024 * 1024,
            introspection_cache_entries: 10_000,
            introspection_positive_ttl: Duration::from_secs(30),
            introspection_negative_ttl: Duration::from_secs(5),
            http_timeout: Duration::from_secs(5),
            revocation: Arc::new(NoRevocationList),
            clock: Arc::new(SystemClock),
            trusted_proxies: Vec::new(),
            geoip: None,
            connect: None,
            tls_ca_file: None,
            tls_client_identity: None,
            allow_insecure_issuer: false,
            public_origin: None,
            dpop_proof_window: Duration::from_secs(60),
            dpop_replay_capacity: 1_000_000,
        }
    }
}

impl fmt::Debug for VerifierOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierOptions")
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("algorithms", &self.algorithms)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("credential", &self.credential)
            .field("secret_prefix", &self.secret_prefix)
            .field("jwks_refresh_interval", &self.jwks_refresh_interval)
            .field("jwks_min_refetch_interval", &self.jwks_min_refetch_interval)
            .field("verified_cache_bytes", &self.verified_cache_bytes)
            .field(
                "introspection_cache_entries",
                &self.introspection_cache_entries,
            )
            .field(
                "introspection_positive_ttl",
                &self.introspection_positive_ttl,
            )
            .field(
                "introspection_negative_ttl",
                &self.introspection_negative_ttl,
            )
            .field("http_timeout", &self.http_timeout)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "geoip",
                &self.geoip.as_ref().map(|geoip| geoip.path().to_owned()),
            )
            .field("connect", &self.connect)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client_identity", &self.tls_client_identity)
            .field("allow_insecure_issuer", &self.allow_insecure_issuer)
            .field("public_origin", &self.public_origin)
            .field("dpop_proof_window", &self.dpop_proof_window)
            .field("dpop_replay_capacity", &self.dpop_replay_capacity)
            .finish_non_exhaustive()
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
