//! The gateway's configuration file (`gateway.toml`) and its validation.
//!
//! Policy: the file is read strictly — unknown keys are errors, so a typo such as
//! `scope =` for `scopes =` is refused instead of silently opening a route. Everything
//! is checked before any of it is used, at start and on every reload, and a reload
//! that fails keeps the configuration already running. Messages name the route and
//! the value at fault. The credential may come from the environment
//! ([`CREDENTIAL_ENV`]), which wins over the file so the file can be shared without
//! the secret.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! server = "http://127.0.0.1:7700"   # where the latchkey server is reached: JWKS, introspection, feed, usage
//! # issuer = "https://auth.example.com"  # the `iss` tokens carry (the server's --public-url); default: `server`
//! # tls_ca_file = "/etc/latchkey/ca.pem" # extra CAs for an https `server` and https upstreams
//! # allow_insecure_issuer = false        # plain http:// `server` beyond loopback; warns at start
//! credential = "lk_ak_…"             # or env LATCHKEY_GATEWAY_CREDENTIAL; needs latchkey:introspect
//! max_staleness_seconds = 30
//! # upstream_timeout_seconds = 30    # no response head within this → 504; per route too
//! # drain_timeout_seconds = 10       # on shutdown, how long in-flight requests may finish
//! # header_read_timeout_seconds = 10 # a request head (or the next, when idle) within this
//! # body_read_timeout_seconds = 30   # a request body silent this long → 408, closed
//! # max_connections = 10000          # open client connections; beyond, new ones wait
//! # audience = "https://api.example.com"  # the `aud` tokens must carry; default: `issuer`
//! # trusted_proxies = ["10.0.1.0/24"]     # proxies whose X-Forwarded-For names the client
//! # public_origin = "https://api.example.com"  # the origin clients address; DPoP proofs' htu
//! # tls_cert_file = "/etc/latchkey/gateway.pem"  # serve TLS (HTTP/2 and HTTP/1.1) with this chain…
//! # tls_key_file = "/etc/latchkey/gateway.key"   # …and its key; reloaded on SIGHUP and on change
//! # tls_handshake_timeout_seconds = 10           # a TLS handshake within this
//! # tls_client_cert_file = "/etc/latchkey/gw-client.pem"  # mutual TLS to an https `server`…
//! # tls_client_key_file = "/etc/latchkey/gw-client.key"   # …with this certificate and key
//! # metrics_listen = "127.0.0.1:9100"    # GET /metrics on a listener of its own
//! # metrics_allowed_networks = ["127.0.0.0/8", "::1"]    # who may scrape it; others 403
//! # metrics_enabled = true               # false: record nothing (to measure the cost)
//!
//! [[route]]
//! prefix = "/reports"
//! upstream = "http://127.0.0.1:9000"
//! scopes = { GET = ["reports:read"], POST = ["reports:write"] }   # "*" = any other method
//! # public = true               → no authentication on this route
//! # timeout_seconds = 5         → overrides upstream_timeout_seconds
//! # strip_authorization = true  → do not pass the client's Authorization header upstream
//!
//! [[route]]
//! prefix = "/billing"
//! upstream = "https://billing.internal:8443"   # TLS, certificate checked
//! # tls_ca_file = "/etc/latchkey/internal-ca.pem"  → CAs trusted for it beside the system's
//! ```

use crate::listener::Limits;
use latchkey_core::cidr::IpNet;
use latchkey_listener::TlsFiles;
use latchkey_verify::ClientIdentity;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that supplies (and overrides) `credential`.
pub const CREDENTIAL_ENV: &str = "LATCHKEY_GATEWAY_CREDENTIAL";

/// The longest timeout accepted, so a typo cannot hold connections for years.
const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;

/// The whole configuration file. Build it with [`GatewayConfig::load`] (file and
/// environment) or [`GatewayConfig::from_toml`] (text only), or as a literal in code.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The address the gateway listens on.
    pub listen: SocketAddr,
    /// Where the latchkey server is reached (`http://` or `https://`, no path): its
    /// metadata, keys, introspection, revocation feed, and usage batches
    /// (`{server}/v1/usage`). Also the issuer, unless `issuer` says otherwise. Plain
    /// `http://` beyond loopback needs `allow_insecure_issuer`.
    pub server: String,
    /// The issuer whose tokens are accepted: exactly the `iss` they carry, the
    /// server's public URL (`--public-url`), which its metadata must name. `None`:
    /// `server`. Set it when the gateway reaches the server at another address, say
    /// `server = "http://10.0.0.5:7700"` behind `issuer = "https://auth.example.com"`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// A PEM file of CA certificates trusted beside the system's roots, for
    /// certificates from a private CA: the `https://` server's, and those of `https://`
    /// upstreams whose route names no `tls_ca_file` of its own.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Accept a plain `http://` server beyond loopback: tokens, keys and the revocation
    /// feed then cross the network unprotected. A warning is logged at start.
    #[serde(default)]
    pub allow_insecure_issuer: bool,
    /// The gateway's own credential: a `latchkey` tenant api key holding
    /// `latchkey:introspect`. Required, from here or [`CREDENTIAL_ENV`].
    #[serde(default)]
    pub credential: Option<String>,
    /// The audience tokens must be for; `None`: the issuer (the server's default
    /// audience).
    #[serde(default)]
    pub audience: Option<String>,
    /// How long the deny-list replica may go without hearing from the feed before
    /// tokens are refused with 503.
    #[serde(default = "default_max_staleness")]
    pub max_staleness_seconds: u64,
    /// How long an upstream may take to send its response head after the last byte of
    /// the request reached it; then 504. Fractions allowed.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_seconds: f64,
    /// On shutdown, how long requests in flight may take to finish.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_seconds: u64,
    /// A client must send a whole request head within this long, on a new connection
    /// and between requests on a kept-alive one; then the connection is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// A request body that sends nothing for this long is answered 408 and its
    /// connection closed. Per read: a slow body that keeps arriving may take longer.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_seconds: u64,
    /// Open client connections at most; beyond, new clients wait until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Proxies in front of the gateway (addresses or CIDR networks). From one of them
    /// the client is the right-most `X-Forwarded-For` address that is not a trusted
    /// proxy; from any other peer the header is ignored and the peer is the client.
    /// That address is what IP allowlists, usage records and the `X-Forwarded-For` sent
    /// upstream see. Empty by default: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// The origin (`https://api.example.com`) clients address the gateway at, when it
    /// sits behind a TLS-terminating load balancer: the `htu` of a DPoP proof is this
    /// and the request's path. Unset: `https` when the gateway serves TLS itself, else
    /// `http`, with the request's `Host` (docs/MACHINES.md, "Binding tokens with DPoP").
    /// `X-Forwarded-Host`/`-Proto` are never read for it.
    #[serde(default)]
    pub public_origin: Option<String>,
    /// A MaxMind DB country database for the country rules of tenant policies
    /// (docs/API.md, "Where tokens may be used from"); read at start and again when it
    /// changes. Without one, tokens of tenants whose rules name countries are refused.
    #[serde(default)]
    pub geoip_database_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first) to serve TLS with, beside `tls_key_file`;
    /// clients then speak HTTP/2 or HTTP/1.1, chosen over ALPN. Plain HTTP/1.1 when
    /// unset. Reloaded on SIGHUP and when the file changes.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// A client's TLS handshake must finish within this long.
    #[serde(default = "default_handshake_timeout")]
    pub tls_handshake_timeout_seconds: u64,
    /// PEM certificate the gateway presents to an `https://` server that asks for
    /// mutual TLS (its `tls_client_ca_file`), beside `tls_client_key_file`.
    #[serde(default)]
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_client_cert_file`.
    #[serde(default)]
    pub tls_client_key_file: Option<PathBuf>,
    /// Where `GET /metrics` is served, on a listener of its own: on the proxy
    /// listener every path belongs to the routes (docs/OPERATIONS.md, "Metrics"). No
    /// metrics endpoint when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The peers (addresses or CIDR networks) that may scrape `metrics_listen`; any
    /// other gets 403. Loopback by default.
    #[serde(default = "default_metrics_allowed_networks")]
    pub metrics_allowed_networks: Vec<IpNet>,
    /// Count requests by route, method and status, and their durations. On by default;
    /// off records nothing (for measuring what metrics cost) and `metrics_listen`
    /// then answers 404.
    #[serde(default = "default_true")]
    pub metrics_enabled: bool,
    /// The routes (`[[route]]` tables), matched by longest prefix.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

/// One `[[route]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The path prefix, matched on whole segments: `/reports` matches `/reports` and
    /// `/reports/1`, not `/reportsx`. A trailing `/` is ignored.
    pub prefix: String,
    /// Where matching requests go: `http://host[:port]` or `https://host[:port]`, no
    /// path. The request path is forwarded unchanged. An `https://` upstream's
    /// certificate must be valid for `host` and chain to the system's trusted roots or
    /// to [`tls_ca_file`](Self::tls_ca_file) (without one, to the top-level
    /// `tls_ca_file`); if not, requests are answered 502.
    pub upstream: String,
    /// Scopes needed, by method (`GET`, `POST`, … in upper case, or `"*"` for any
    /// method not listed). Every scope in the list is needed; an empty list needs only
    /// a valid token. `HEAD` falls back to `GET`. A method matching no key is answered
    /// 405. Without `scopes`, any valid token passes.
    #[serde(default)]
    pub scopes: Option<BTreeMap<String, Vec<String>>>,
    /// No authentication: the request is forwarded as is (identity headers are still
    /// stripped, and none are set).
    #[serde(default)]
    pub public: bool,
    /// Overrides [`GatewayConfig::upstream_timeout_seconds`] for this route.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// Do not pass the client's `Authorization` header to the upstream. By default it
    /// is passed, so an upstream that also verifies tokens (the tower layer) works
    /// behind the gateway unchanged.
    #[serde(default)]
    pub strip_authorization: bool,
    /// A PEM bundle of CAs trusted for this route's `https://` upstream, beside the
    /// system's roots and instead of the top-level `tls_ca_file`, for a certificate
    /// from a private CA. Read when the configuration
    /// is loaded and on every reload; an error there refuses the configuration. Only
    /// for an `https://` upstream.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

fn default_metrics_allowed_networks() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .into_iter()
        .filter_map(|net| IpNet::parse(net).ok())
        .collect()
}

fn default_max_staleness() -> u64 {
    30
}

fn default_upstream_timeout() -> f64 {
    30.0
}

fn default_handshake_timeout() -> u64 {
    10
}

fn default_drain_timeout() -> u64 {
    10
}

fn default_header_read_timeout() -> u64 {
    10
}

fn default_body_read_timeout() -> u64 {
    30
}

fn default_max_connections() -> u32 {
    10_000
}

/// The longest read timeout accepted: beyond an hour a slow client is not being
/// limited at all, and the value is more likely a typo.
const MAX_READ_TIMEOUT_SECONDS: u64 = 3_600;

/// The most connections accepted; each costs a file descriptor and some memory, so a
/// larger value is a typo rather than a plan.
const MAX_CONNECTIONS: u32 = 1_000_000;

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("server", &self.server)
            .field("issuer", &self.issuer)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("allow_insecure_issuer", &self.allow_insecure_issuer)
            .field("credential", &self.credential.as_ref().map(|_| "…"))
            .field("audience", &self.audience)
            .field("max_staleness_seconds", &self.max_staleness_seconds)
            .field("upstream_timeout_seconds", &self.upstream_timeout_seconds)
            .field("drain_timeout_seconds", &self.drain_timeout_seconds)
            .field(
                "header_read_timeout_seconds",
                &self.header_read_timeout_seconds,
            )
            .field("body_read_timeout_seconds", &self.body_read_timeout_seconds)
            .field("max_connections", &self.max_connections)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("public_origin", &self.public_origin)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field(
                "tls_handshake_timeout_seconds",
                &self.tls_handshake_timeout_seconds,
            )
            .field("tls_client_cert_file", &self.tls_client_cert_file)
            .field("tls_client_key_file", &self.tls_client_key_file)
            .field("metrics_listen", &self.metrics_listen)
            .field("metrics_allowed_networks", &self.metrics_allowed_networks)
            .field("metrics_enabled", &self.metrics_enabled)
            .field("routes", &self.routes)
            .finish()
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Not valid TOML, a value of the wrong type, or an unknown key.
    #[error("{0}")]
    Syntax(String),
    /// `server` or `issuer` is not a usable `http://` or `https://` URL.
    #[error("server `{url}`: {reason}")]
    BadServer {
        /// The value given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The latchkey server could not be reached or refused the gateway.
    #[error("latchkey server: {0}")]
    Server(String),
    /// A TLS file (certificate, key or CA bundle) cannot be used; the message names the
    /// setting and the file.
    #[error("{0}")]
    Tls(String),
    /// No credential in the file nor in the environment.
    #[error("no credential: set `credential` in the config file or {CREDENTIAL_ENV}")]
    MissingCredential,
    /// A setting outside its range.
    #[error("`{field}` {reason}")]
    BadValue {
        /// The setting.
        field: String,
        /// The range it must be in.
        reason: String,
    },
    /// A route's prefix is not a plain absolute path.
    #[error("route `{prefix}`: prefix {reason}")]
    BadPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two routes have the same prefix (after dropping a trailing `/`).
    #[error("route `{prefix}` is defined more than once")]
    DuplicatePrefix {
        /// The prefix.
        prefix: String,
    },
    /// A route's upstream is not an `http://` or `https://` `host[:port]` URL.
    #[error("route `{prefix}`: upstream `{url}`: {reason}")]
    BadUpstream {
        /// The route.
        prefix: String,
        /// The value given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A route's `tls_ca_file` cannot be used: it is set on a plain `http://` upstream,
    /// or the file cannot be read or holds no valid PEM certificate.
    #[error("route `{prefix}`: tls_ca_file `{file}`: {reason}")]
    BadRouteCaFile {
        /// The route.
        prefix: String,
        /// The file given.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A `scopes` key is neither an upper-case HTTP method nor `"*"`.
    #[error(
        "route `{prefix}`: unknown method key `{method}` in scopes (use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or \"*\")"
    )]
    UnknownMethod {
        /// The route.
        prefix: String,
        /// The key given.
        method: String,
    },
    /// A scope is not a valid permission name.
    #[error("route `{prefix}`: scope `{scope}` {reason}")]
    BadScope {
        /// The route.
        prefix: String,
        /// The scope given.
        scope: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A public route also lists scopes, which would never be checked.
    #[error("route `{prefix}` is public and cannot have scopes")]
    PublicWithScopes {
        /// The route.
        prefix: String,
    },
}

impl GatewayConfig {
    /// Reads `path`, then takes the credential from [`CREDENTIAL_ENV`] when that is set,
    /// and validates the result.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config =
            Self::from_toml(&text)?.with_env_credential(std::env::var(CREDENTIAL_ENV).ok());
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text. The environment is not consulted and nothing beyond syntax and
    /// types is checked yet: see [`validate`](Self::validate).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string().trim_end().to_owned()))
    }

    /// This configuration with `env` (the value of [`CREDENTIAL_ENV`], if set) as the
    /// credential. An empty value is ignored.
    #[must_use]
    pub fn with_env_credential(mut self, env: Option<String>) -> Self {
        if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
            self.credential = Some(value.trim().to_owned());
        }
        self
    }

    /// Checks every value but the routes: the server URL, the credential, the timeouts
    /// and the TLS settings. [`validate`](Self::validate) (in `route`) adds the routes.
    pub(crate) fn validate_settings(&self) -> Result<(), ConfigError> {
        self.server_base()?;
        self.issuer()?;
        self.credential()?;
        seconds("drain_timeout_seconds", self.drain_timeout_seconds as f64)?;
        seconds("max_staleness_seconds", self.max_staleness_seconds as f64)?;
        for (field, value) in [
            (
                "header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            ("body_read_timeout_seconds", self.body_read_timeout_seconds),
            (
                "tls_handshake_timeout_seconds",
                self.tls_handshake_timeout_seconds,
            ),
        ] {
            if !(1..=MAX_READ_TIMEOUT_SECONDS).contains(&value) {
                return Err(ConfigError::BadValue {
                    field: field.to_owned(),
                    reason: format!("must be from 1 to {MAX_READ_TIMEOUT_SECONDS} seconds"),
                });
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(ConfigError::BadValue {
                field: "max_connections".to_owned(),
                reason: format!("must be from 1 to {MAX_CONNECTIONS}"),
            });
        }
        for (set, missing) in [
            (
                (&self.tls_cert_file, "tls_cert_file"),
                (&self.tls_key_file, "tls_key_file"),
            ),
            (
                (&self.tls_key_file, "tls_key_file"),
                (&self.tls_cert_file, "tls_cert_file"),
            ),
            (
                (&self.tls_client_cert_file, "tls_client_cert_file"),
                (&self.tls_client_key_file, "tls_client_key_file"),
            ),
            (
                (&self.tls_client_key_file, "tls_client_key_file"),
                (&self.tls_client_cert_file, "tls_client_cert_file"),
            ),
        ] {
            if set.0.is_some() && missing.0.is_none() {
                return Err(ConfigError::BadValue {
                    field: set.1.to_owned(),
                    reason: format!("is set without {}", missing.1),
                });
            }
        }
        Ok(())
    }

    /// What the listener allows its clients: the read and handshake timeouts and the
    /// connection cap.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_seconds),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_seconds),
        }
    }

    /// The TLS the gateway serves, when `tls_cert_file` and `tls_key_file` are set.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: None,
        })
    }

    /// The certificate and key the gateway presents to a server asking for mutual TLS.
    pub fn client_identity(&self) -> Option<ClientIdentity> {
        Some(ClientIdentity {
            cert_file: self.tls_client_cert_file.clone()?,
            key_file: self.tls_client_key_file.clone()?,
        })
    }

    /// [`max_staleness_seconds`](Self::max_staleness_seconds) as a duration, for the
    /// deny-list replica's options.
    pub fn max_staleness(&self) -> Duration {
        Duration::from_secs(self.max_staleness_seconds)
    }

    /// [`drain_timeout_seconds`](Self::drain_timeout_seconds) as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_seconds)
    }

    /// The credential, or [`ConfigError::MissingCredential`].
    pub fn credential(&self) -> Result<&str, ConfigError> {
        self.credential
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .ok_or(ConfigError::MissingCredential)
    }

    /// `server` without a trailing `/`, once checked.
    pub(crate) fn server_base(&self) -> Result<&str, ConfigError> {
        let base = checked_url(&self.server, "server")?;
        if base
            .parse::<hyper::Uri>()
            .is_ok_and(|u| !matches!(u.path(), "" | "/"))
        {
            return Err(ConfigError::BadServer {
                url: self.server.clone(),
                reason: "must not have a path: it is where the server is reached; put the public URL in `issuer`".to_owned(),
            });
        }
        Ok(base)
    }

    /// The issuer tokens must name: `issuer`, else `server`, exactly as written (the
    /// `iss` comparison is exact).
    pub fn issuer(&self) -> Result<&str, ConfigError> {
        match &self.issuer {
            Some(issuer) => checked_url(issuer, "issuer").map(|_| issuer.as_str()),
            None => checked_url(&self.server, "server").map(|_| self.server.as_str()),
        }
    }

    /// The connect address to give the verifier: `server`, when an `issuer` that
    /// differs from it is set.
    pub(crate) fn connect(&self) -> Result<Option<String>, ConfigError> {
        let server = self.server_base()?;
        Ok(match &self.issuer {
            Some(issuer) if issuer.trim_end_matches('/') != server => Some(server.to_owned()),
            _ => None,
        })
    }
}

/// `url` (the value of `field`) without a trailing `/`, checked to be an absolute
/// `http://` or `https://` URL naming a host, without user information, query or
/// fragment. Whether plain HTTP may be used is latchkey-verify's to decide, with
/// `allow_insecure_issuer`.
fn checked_url<'a>(url: &'a str, field: &str) -> Result<&'a str, ConfigError> {
    let bad = |reason: &str| {
        if field == "server" {
            ConfigError::BadServer {
                url: url.to_owned(),
                reason: reason.to_owned(),
            }
        } else {
            ConfigError::BadValue {
                field: field.to_owned(),
                reason: format!("`{url}`: {reason}"),
            }
        }
    };
    let base = url.trim_end_matches('/');
    let uri: hyper::Uri = base.parse().map_err(|_| bad("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must start with http:// or https://"));
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) || base.contains('@') {
        return Err(bad("must name a host, without user information"));
    }
    if uri.query().is_some() || base.contains('#') {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(base)
}

/// A timeout in seconds, checked to be positive, finite and at most a day.
pub(crate) fn seconds(field: &str, value: f64) -> Result<Duration, ConfigError> {
    if !(value > 0.0 && value <= MAX_TIMEOUT_SECONDS) {
        return Err(ConfigError::BadValue {
            field: field.to_owned(),
            reason: format!("must be more than 0 and at most {MAX_TIMEOUT_SECONDS} seconds"),
        });
    }
    Duration::try_from_secs_f64(value).map_err(|e| ConfigError::BadValue {
        field: field.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
listen = "127.0.0.1:8080"
server = "http://127.0.0.1:7700"   # the latchkey server: issuer, JWKS, introspection, feed
credential = "lk_ak_…"             # or env LATCHKEY_GATEWAY_CREDENTIAL; needs latchkey:introspect
max_staleness_seconds = 30
[[route]]
prefix = "/reports"
upstream = "http://127.0.0.1:9000"
scopes = { GET = ["reports:read"], POST = ["reports:write"] }   # "*" = any method
# public = true  → no authentication on this route
"#;

    #[test]
    fn the_example_of_the_issue_parses_and_validates() {
        let config = GatewayConfig::from_toml(ISSUE_EXAMPLE).unwrap();
        config.validate().unwrap();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.max_staleness(), Duration::from_secs(30));
        assert!((config.upstream_timeout_seconds - 30.0).abs() < f64::EPSILON);
        let route = &config.routes[0];
        assert_eq!(route.prefix, "/reports");
        assert_eq!(route.scopes.as_ref().unwrap()["POST"], ["reports:write"]);
        assert!(!route.public);
    }

    #[test]
    fn the_environment_credential_wins_and_an_empty_one_is_ignored() {
        let config = GatewayConfig::from_toml(ISSUE_EXAMPLE).unwrap();
        let from_env = config
            .clone()
            .with_env_credential(Some("lk_ak_env".to_owned()));
        assert_eq!(from_env.credential().unwrap(), "lk_ak_env");
        let empty = config.with_env_credential(Some(String::new()));
        assert_eq!(empty.credential().unwrap(), "lk_ak_…");
    }

    #[test]
    fn the_debug_form_hides_the_credential() {
        let config = GatewayConfig::from_toml(ISSUE_EXAMPLE).unwrap();
        assert!(!format!("{config:?}").contains("lk_ak_"));
    }

    #[test]
    fn listener_limits_default_to_10_s_head_30_s_body_and_10_000_connections() {
        let config = GatewayConfig::from_toml(ISSUE_EXAMPLE).unwrap();
        let limits = config.limits();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(30));
        assert_eq!(limits.max_connections, 10_000);
    }

    #[test]
    fn a_zero_or_absurd_listener_limit_is_refused_naming_the_key() {
        for (setting, message) in [
            (
                "header_read_timeout_seconds = 0",
                "`header_read_timeout_seconds` must be from 1 to 3600 seconds",
            ),
            (
                "body_read_timeout_seconds = 0",
                "`body_read_timeout_seconds` must be from 1 to 3600 seconds",
            ),
            (
                "header_read_timeout_seconds = 86400",
                "`header_read_timeout_seconds` must be from 1 to 3600 seconds",
            ),
            (
                "max_connections = 0",
                "`max_connections` must be from 1 to 1000000",
            ),
            (
                "max_connections = 4000000",
                "`max_connections` must be from 1 to 1000000",
            ),
        ] {
            let text = ISSUE_EXAMPLE.replace(
                "max_staleness_seconds = 30",
                &format!("max_staleness_seconds = 30\n{setting}"),
            );
            let error = GatewayConfig::from_toml(&text)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(error.to_string(), message, "{setting}");
        }
    }

    #[test]
    fn a_negative_or_non_numeric_listener_limit_is_refused_naming_the_key() {
        for (setting, key) in [
            (
                "header_read_timeout_seconds = -1",
                "header_read_timeout_seconds",
            ),
            (
                "body_read_timeout_seconds = \"30\"",
                "body_read_timeout_seconds",
            ),
            ("max_connections = -2", "max_connections"),
            ("max_connections = 2.5", "max_connections"),
        ] {
            let text = ISSUE_EXAMPLE.replace(
                "max_staleness_seconds = 30",
                &format!("max_staleness_seconds = 30\n{setting}"),
            );
            let error = GatewayConfig::from_toml(&text).unwrap_err().to_string();
            assert!(error.contains(key), "{setting}: {error}");
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks_and_default_to_none() {
        let config = GatewayConfig::from_toml(ISSUE_EXAMPLE).unwrap();
        assert!(config.trusted_proxies.is_empty());
        let text = format!("trusted_proxies = [\"10.0.1.0/24\", \"192.0.2.7\"]\n{ISSUE_EXAMPLE}");
        let config = GatewayConfig::from_toml(&text).unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.0.1.0/24", "192.0.2.7/32"]);
        for bad in ["[\"nope\"]", "[\"10.0.1.1/24\"]", "\"10.0.0.0/8\""] {
            let text = format!("trusted_proxies = {bad}\n{ISSUE_EXAMPLE}");
            let error = GatewayConfig::from_toml(&text).unwrap_err().to_string();
            assert!(error.contains("trusted_proxies"), "{bad}: {error}");
        }
    }

    #[test]
    fn integer_timeouts_are_accepted_as_seconds() {
        let text = ISSUE_EXAMPLE.replace(
            "max_staleness_seconds = 30",
            "max_staleness_seconds = 30\nupstream_timeout_seconds = 2",
        );
        let config = GatewayConfig::from_toml(&text).unwrap();
        assert!((config.upstream_timeout_seconds - 2.0).abs() < f64::EPSILON);
    }
}
