//! [`Gateway`]: building it, serving a listener until shutdown, and reloading its
//! routes while it serves.
//!
//! Policy: the gateway is given its [`Verifier`] rather than building one, so the
//! caller decides discovery, the deny-list replica and the clock, and tests pin keys.
//! Serving speaks HTTP/1.1 to clients over plain TCP, and HTTP/2 or HTTP/1.1 (by ALPN)
//! over TLS; upstreams get HTTP/1.1, plain or TLS. A reload swaps the routing table
//! (prefixes, upstreams, scopes, timeouts, and route CA files, read again) atomically
//! between requests without touching the listener or open connections, and on SIGHUP
//! the TLS certificate is read again; settings that shape the process itself
//! (`listen`, `server`, `issuer`, `tls_ca_file`, `allow_insecure_issuer`,
//! `credential`, `audience`, `max_staleness_seconds`, `drain_timeout_seconds`, which
//! TLS files are used, and the listener's limits) are only read at start, and a reload
//! that changes them says so in the log. The listener times request heads and
//! bodies and caps connections (see `listener`). On shutdown the gateway stops
//! accepting, lets requests in flight finish for up to the drain timeout, then sends
//! the last usage batch.

use crate::config::{ConfigError, GatewayConfig};
use crate::headers::LastIdentity;
use crate::listener::StallGuard;
use crate::metrics::GatewayMetrics;
use crate::proxy::handle;
use crate::route::{RouteTable, default_upstream};
use crate::shared::Shared;
use crate::stats::{Counters, GatewayStats};
use crate::usage::{UsageClient, UsageOptions, UsageReporter};
use hyper::Request;
use hyper::service::service_fn;
use latchkey_geoip::ReloadingGeoIp;
use latchkey_listener::{Accepted, Listener, Protocols, RequestBody, ServerTls, TlsError};
use latchkey_verify::{
    Credential, ReplicaOptions, RevocationCheck, RevocationReplica, Verifier, VerifierOptions,
};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often a gateway serving TLS looks whether its certificate or key file changed.
pub const CERT_WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// What a gateway is built from besides its configuration.
#[derive(Debug, Clone)]
pub struct GatewayDeps {
    /// Verifies bearer credentials; give it the deny-list replica as its
    /// [`VerifierOptions::revocation`] (see [`GatewayConfig::verifier_options`]).
    pub verifier: Verifier,
    /// How usage is batched and sent to `{server}/v1/usage`.
    pub usage: UsageOptions,
}

impl GatewayDeps {
    /// `verifier` with the default usage options.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            usage: UsageOptions::default(),
        }
    }
}

impl GatewayConfig {
    /// Verifier options for this configuration: its credential (for introspecting api
    /// keys and long-lived JWTs), its audience, its `trusted_proxies`, and `revocation`
    /// as the deny list —
    /// normally a `RevocationReplica` following `server`'s feed with
    /// [`max_staleness`](Self::max_staleness). With `geoip_database_file` it opens the
    /// database and watches it on the current tokio runtime.
    pub fn verifier_options(
        &self,
        revocation: Arc<dyn RevocationCheck>,
    ) -> Result<VerifierOptions, ConfigError> {
        Ok(VerifierOptions {
            credential: Some(Credential::new(self.credential()?)),
            audience: self.audience.clone(),
            revocation,
            trusted_proxies: self.trusted_proxies.clone(),
            public_origin: self.public_origin.clone(),
            connect: self.connect()?,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_client_identity: self.client_identity(),
            allow_insecure_issuer: self.allow_insecure_issuer,
            geoip: self.geoip()?,
            ..VerifierOptions::default()
        })
    }

    /// The GeoIP database of `geoip_database_file`, watched for changes every 10 s; a
    /// missing or corrupt file refuses the configuration.
    fn geoip(&self) -> Result<Option<Arc<ReloadingGeoIp>>, ConfigError> {
        let Some(path) = &self.geoip_database_file else {
            return Ok(None);
        };
        let geoip =
            Arc::new(
                ReloadingGeoIp::open(path).map_err(|error| ConfigError::BadValue {
                    field: "geoip_database_file".to_owned(),
                    reason: error.to_string(),
                })?,
            );
        geoip
            .clone()
            .spawn_watch(std::time::Duration::from_secs(10));
        Ok(Some(geoip))
    }
}

/// Builds a gateway the way `latchkey gateway` runs one: a deny-list replica following
/// the server's revocation feed (failing closed after `max_staleness_seconds`), a
/// verifier discovered from the server that consults it, and the gateway itself. The
/// replica is returned so a caller can watch it (`metrics()`, `is_stale()`).
pub async fn assemble(config: GatewayConfig) -> Result<(Gateway, RevocationReplica), ConfigError> {
    config.validate()?;
    let replica = RevocationReplica::start(
        config.server_base()?,
        Credential::new(config.credential()?),
        ReplicaOptions {
            max_staleness: config.max_staleness(),
            tls_ca_file: config.tls_ca_file.clone(),
            tls_client_identity: config.client_identity(),
            allow_insecure_issuer: config.allow_insecure_issuer,
            ..ReplicaOptions::default()
        },
    )
    .map_err(|e| ConfigError::Server(e.to_string()))?;
    let options = config.verifier_options(Arc::new(replica.clone()))?;
    let verifier = Verifier::discover(config.issuer()?, options)
        .await
        .map_err(|e| ConfigError::Server(e.to_string()))?;
    replica.attach(verifier.evictor());
    let gateway = Gateway::build(config, GatewayDeps::new(verifier))?;
    Ok((gateway, replica))
}

/// The latchkey gateway: a reverse proxy that authenticates and authorizes each
/// request before forwarding it. Cheap to clone; clones are the same gateway, so one
/// can serve while another reloads.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.shared.routes().len())
            .field("verifier", &self.shared.verifier)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Validates `config` and builds the gateway. Nothing is bound or started yet:
    /// see [`serve`](Self::serve).
    pub fn build(config: GatewayConfig, deps: GatewayDeps) -> Result<Self, ConfigError> {
        config.validate()?;
        let upstream = default_upstream(&config)?;
        let routes = RouteTable::compile(&config, &upstream)?;
        let usage = if deps.usage.enabled {
            let identity = config.client_identity();
            let client = UsageClient::new(config.tls_ca_file.as_deref(), identity.as_ref())
                .map_err(ConfigError::Tls)?;
            Some(Arc::new(UsageReporter::new(
                config.server_base()?,
                config.credential()?,
                deps.usage,
                client,
            )))
        } else {
            None
        };
        if routes.len() == 0 {
            tracing::warn!("the gateway has no routes; every request will be answered 404");
        }
        let tls = match config.tls_files() {
            Some(files) => Some(
                ServerTls::load(files, Protocols::Http2AndHttp1)
                    .map_err(|error| ConfigError::Tls(error.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                verifier: deps.verifier,
                upstream,
                usage,
                counters: Counters::default(),
                metrics: Arc::new(GatewayMetrics::new(config.metrics_enabled)),
                tls,
                routes: RwLock::new(Arc::new(routes)),
                started_with: config,
            }),
        })
    }

    /// Serves `listener` until `shutdown` completes, then drains: no new connections,
    /// requests in flight get up to `drain_timeout_seconds` to finish, and pending
    /// usage is sent once more. Usage is sent every second while serving. With
    /// `tls_cert_file` the listener speaks TLS (HTTP/2 or HTTP/1.1 by ALPN), and the
    /// certificate is reloaded when its files change.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let flusher = self
            .shared
            .usage
            .clone()
            .map(|usage| tokio::spawn(usage.run(stopped)));
        let limits = self.shared.started_with.limits();
        let tls = self.shared.tls.clone();
        let cert_watch = tls.as_ref().map(|tls| tls.watch(CERT_WATCH_INTERVAL));
        let listener = Listener::new(listener, tls, limits);
        if let Ok(address) = listener.local_addr() {
            tracing::info!(
                %address,
                scheme = listener.scheme(),
                routes = self.shared.routes().len(),
                "gateway listening"
            );
        }
        let shared = self.shared.clone();
        let body_timeout = limits.body_read_timeout;
        let make = move |accepted: Accepted| {
            let shared = shared.clone();
            let last_identity = Arc::new(LastIdentity::default());
            service_fn(move |request: Request<RequestBody>| {
                let shared = shared.clone();
                let last_identity = last_identity.clone();
                let request = request.map(|body| StallGuard::new(body, body_timeout));
                async move {
                    Ok::<_, Infallible>(
                        handle(&shared, &last_identity, accepted.peer, request).await,
                    )
                }
            })
        };
        let drain = self.shared.started_with.drain_timeout();
        let shutdown = async move {
            shutdown.await;
            tracing::info!(?drain, "gateway shutting down; draining requests in flight");
        };
        listener.serve(make, shutdown, Some(drain)).await;
        if let Some(cert_watch) = cert_watch {
            cert_watch.abort();
        }
        // The receiver may already be gone if the flusher ended; nothing to stop then.
        let _ = stop.send(true);
        if let Some(flusher) = flusher
            && let Err(error) = flusher.await
        {
            tracing::error!(%error, "the usage task failed");
        }
    }

    /// Reads the TLS certificate and key again, if the gateway serves TLS: new
    /// handshakes present them. On error the current ones stay.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.shared.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Applies a new configuration's routes, upstreams, scopes and timeouts to every
    /// request that starts from now on. On error nothing changes. Settings read only
    /// at start are logged when they differ, and keep their old value.
    pub fn reload(&self, config: GatewayConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let routes = RouteTable::compile(&config, &self.shared.upstream)?;
        for field in needs_restart(&self.shared.started_with, &config) {
            tracing::warn!(
                field,
                "changed in the configuration; takes effect on restart"
            );
        }
        let count = routes.len();
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(routes);
        tracing::info!(routes = count, "gateway configuration reloaded");
        Ok(())
    }

    /// Counters since the gateway was built.
    pub fn stats(&self) -> GatewayStats {
        let usage = self
            .shared
            .usage
            .as_ref()
            .map(|u| u.stats())
            .unwrap_or_default();
        self.shared.counters.snapshot(usage)
    }

    /// Serves `GET /metrics` on `listener` (bound to `metrics_listen`) until
    /// `shutdown` completes; with the deny-list `replica`, its sequence, lag and
    /// staleness too (docs/OPERATIONS.md, "Metrics").
    pub async fn serve_metrics(
        &self,
        listener: TcpListener,
        replica: Option<RevocationReplica>,
        shutdown: impl Future<Output = ()>,
    ) {
        let gateway = self.clone();
        crate::metrics::serve(
            self.shared.metrics.clone(),
            self.shared.started_with.metrics_allowed_networks.clone(),
            move || gateway.stats(),
            listener,
            replica,
            shutdown,
        )
        .await;
    }

    /// The verifier the gateway uses.
    pub fn verifier(&self) -> &Verifier {
        &self.shared.verifier
    }
}

/// The start-only settings that differ between `old` and `new`.
fn needs_restart(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.server != new.server {
        changed.push("server");
    }
    if old.issuer != new.issuer {
        changed.push("issuer");
    }
    if old.tls_ca_file != new.tls_ca_file {
        changed.push("tls_ca_file");
    }
    if old.allow_insecure_issuer != new.allow_insecure_issuer {
        changed.push("allow_insecure_issuer");
    }
    if old.credential != new.credential {
        changed.push("credential");
    }
    if old.audience != new.audience {
        changed.push("audience");
    }
    if old.max_staleness_seconds != new.max_staleness_seconds {
        changed.push("max_staleness_seconds");
    }
    if old.drain_timeout_seconds != new.drain_timeout_seconds {
        changed.push("drain_timeout_seconds");
    }
    if old.header_read_timeout_seconds != new.header_read_timeout_seconds {
        changed.push("header_read_timeout_seconds");
    }
    if old.body_read_timeout_seconds != new.body_read_timeout_seconds {
        changed.push("body_read_timeout_seconds");
    }
    if old.max_connections != new.max_connections {
        changed.push("max_connections");
    }
    // Held by the verifier, which is built once.
    if old.trusted_proxies != new.trusted_proxies {
        changed.push("trusted_proxies");
    }
    if old.public_origin != new.public_origin {
        changed.push("public_origin");
    }
    // The files are read again on SIGHUP; which files they are is fixed at start.
    for (field, old, new) in [
        ("tls_cert_file", &old.tls_cert_file, &new.tls_cert_file),
        ("tls_key_file", &old.tls_key_file, &new.tls_key_file),
        (
            "tls_client_cert_file",
            &old.tls_client_cert_file,
            &new.tls_client_cert_file,
        ),
        (
            "tls_client_key_file",
            &old.tls_client_key_file,
            &new.tls_client_key_file,
        ),
    ] {
        if old != new {
            changed.push(field);
        }
    }
    if old.tls_handshake_timeout_seconds != new.tls_handshake_timeout_seconds {
        changed.push("tls_handshake_timeout_seconds");
    }
    if old.metrics_listen != new.metrics_listen {
        changed.push("metrics_listen");
    }
    if old.metrics_allowed_networks != new.metrics_allowed_networks {
        changed.push("metrics_allowed_networks");
    }
    if old.metrics_enabled != new.metrics_enabled {
        changed.push("metrics_enabled");
    }
    changed
}

/// Reloads `gateway` from the file at `path` on every SIGHUP.
///
/// The signal handler is installed before this returns, so a SIGHUP sent afterwards
/// can no longer end the process; spawn the returned future to act on it. A file that
/// fails to read or validate is logged and the running configuration is kept. Must be
/// called within a tokio runtime.
#[cfg(unix)]
pub fn reload_on_sighup(
    gateway: Gateway,
    path: impl Into<std::path::PathBuf>,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let path = path.into();
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
            if let Err(error) = GatewayConfig::load(&path).and_then(|c| gateway.reload(c)) {
                tracing::error!(%error, "reload failed; keeping the running configuration");
            }
            if let Some(tls) = &gateway.shared.tls {
                tls.reload_logged();
            }
        }
    })
}
